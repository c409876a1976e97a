-- A partition's dead letters by position, newest first: what a listing of dead-lettered
-- messages reads (docs/storage.md, "Listing messages without scans").
CREATE INDEX dead_letters_position ON queen.dead_letters (partition_id, position);

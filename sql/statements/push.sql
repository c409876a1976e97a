SELECT ord, message_id, inserted FROM queen.push($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::jsonb[], $6::bytea[], $7::text[], $8::boolean)

DELETE FROM queen.ephemeral_queues WHERE name = $1::text RETURNING name

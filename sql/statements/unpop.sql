SELECT queen.unpop($1::text, $2::uuid, $3::uuid[], $4::bigint[], $5::bigint[], $6::integer[], $7::boolean)

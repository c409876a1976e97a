SELECT queen.kv_apply($1::jsonb) AS results

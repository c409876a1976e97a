SELECT queen.locks_apply($1::jsonb) AS results

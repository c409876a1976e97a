SELECT queen.timers_apply($1::jsonb) AS results

SELECT queen.kv_prune($1::integer) AS pruned

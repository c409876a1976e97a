SELECT queen.sweep_expired_leases($1::integer)

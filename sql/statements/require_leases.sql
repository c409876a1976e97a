SELECT queen.require_leases($1::uuid[])

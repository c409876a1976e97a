SELECT queen.consumer_groups($1::double precision)

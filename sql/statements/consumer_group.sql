SELECT queen.consumer_group($1::text)

SELECT queen.delete_consumer_group($1::text, $2::text, $3::boolean)

SELECT queen.delete_queue($1::text)

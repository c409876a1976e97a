SELECT queen.delete_message($1::uuid, $2::text)

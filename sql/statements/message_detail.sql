SELECT * FROM queen.message_detail($1::uuid, $2::text)

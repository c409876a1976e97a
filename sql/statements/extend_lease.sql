SELECT renewed, expires_at, error FROM queen.extend_lease($1::uuid, $2::integer)

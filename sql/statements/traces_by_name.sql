SELECT * FROM queen.traces_by_name($1::text, $2::integer, $3::integer)

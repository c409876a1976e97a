SELECT * FROM queen.trace_names($1::integer, $2::integer)

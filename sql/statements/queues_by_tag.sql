SELECT name FROM queen.queues WHERE ($1::text IS NULL OR namespace = $1::text) AND ($2::text IS NULL OR task = $2::text) ORDER BY priority DESC, name

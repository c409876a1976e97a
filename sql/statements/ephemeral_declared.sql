SELECT name, options::text AS options FROM queen.ephemeral_queues

SELECT p.id, p.num FROM queen.partitions p JOIN queen.queues q ON q.id = p.queue_id WHERE q.name = $1::text AND p.name = 'Default'

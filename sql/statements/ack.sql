SELECT idx, success, error, queue_name, partition_name, lease_released, dlq, noop FROM queen.ack($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::uuid[], $7::boolean)

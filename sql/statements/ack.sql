SELECT idx, success, error, queue_name, partition_name, lease_released, dlq, noop FROM queen.ack($1::text[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::uuid[], $8::boolean)

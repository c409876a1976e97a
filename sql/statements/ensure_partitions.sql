SELECT queue_name, partition_name, partition_id, partition_num, encrypted FROM queen.ensure_partitions($1::text[], $2::text[], $3::uuid[], $4::uuid[])

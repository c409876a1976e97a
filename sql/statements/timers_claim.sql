SELECT queue, timer_key, partition, txn, message_id, payload, sealed FROM queen.timers_claim($1::integer, $2::uuid, $3::integer)

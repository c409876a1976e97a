SELECT queen.set_subscription($1::text, $2::timestamptz)

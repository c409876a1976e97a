SELECT top, low, summarised FROM queen.summarize_time_index($1::bigint, $2::bigint, $3::integer)

SELECT queen.summarize_time_index($1::integer)

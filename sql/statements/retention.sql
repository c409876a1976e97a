SELECT deleted, completed, partitions FROM queen.retention($1::integer)

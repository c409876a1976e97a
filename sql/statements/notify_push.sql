SELECT pg_notify('queen_push', payload) FROM unnest($1::text[]) AS t(payload)

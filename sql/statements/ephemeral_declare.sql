INSERT INTO queen.ephemeral_queues (name, options)
VALUES ($1::text, $2::text::jsonb)
ON CONFLICT (name) DO UPDATE SET options = EXCLUDED.options, updated_at = now()

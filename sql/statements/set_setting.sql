INSERT INTO queen.system_settings (key, value) VALUES ($1::text, $2::jsonb) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()

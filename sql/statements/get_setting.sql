SELECT value FROM queen.system_settings WHERE key = $1::text

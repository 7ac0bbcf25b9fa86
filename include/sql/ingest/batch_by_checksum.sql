-- A loaded batch with this content (the same file dropped under another name).
SELECT * FROM batches WHERE checksum = :checksum AND status = 'loaded' ORDER BY loaded_at LIMIT 1

-- ingest.on_conflict: replace. The later batch's values win; the row now belongs to it.
UPDATE observations SET
{%- for column in columns %}{% if column.name != time_column %}
    {{ column.quoted }} = :v{{ loop.index0 }},{% endif %}{% endfor %}
    batch_id = :batch_id,
    loaded_at = :loaded_at
WHERE {{ quote(time_column) }} = :time

-- core: helpers shared by every app's tables.

-- Time-ordered UUID v7 (RFC 9562) for ids made inside PostgreSQL; PostgreSQL 15 has no
-- built-in. The application uses the same version for ids it makes itself.
CREATE FUNCTION uuid_generate_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

-- The server-side functions are replaced as a whole on every start (in one transaction, under
-- the migration lock), so they always match the server's build: every function of the schema
-- is dropped here and the files that follow create the current ones. A function a newer build
-- no longer has does not linger.
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS sig
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'queen'
    LOOP
        EXECUTE 'DROP FUNCTION ' || f.sig || ' CASCADE';
    END LOOP;
END
$$;
DROP TYPE IF EXISTS queen.ack_item CASCADE;

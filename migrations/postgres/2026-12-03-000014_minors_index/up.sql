-- A release asks, of the patients of a page whose consent a proxy signed,
-- which are minors and when they come of age (decision 0026): a proxy's
-- consent for a minor lapses at majority. A partial index holding only the
-- patients recorded as minors, with both dates, answers from the index
-- alone; registering an adult never writes to it.
--
-- Built CONCURRENTLY, so consents go on being registered while a large
-- table is indexed; that needs a migration outside a transaction
-- (metadata.toml) holding this one statement only. If the build fails, it
-- leaves an invalid index behind; the next start drops it and builds it
-- again (`db::drop_failed_concurrent_builds`).
CREATE INDEX CONCURRENTLY patients_with_majority
    ON patients (pseudonym) INCLUDE (majority_on, deceased_on) WHERE majority_on IS NOT NULL;

-- A release asks, of the patients of a page whose consent a proxy signed,
-- which are minors and when they come of age (decision 0026): a proxy's
-- consent for a minor lapses at majority. A partial index holding only the
-- patients recorded as minors, with both dates, answers from the index
-- alone; registering an adult never writes to it.
CREATE INDEX patients_with_majority
    ON patients (pseudonym, majority_on, deceased_on) WHERE majority_on IS NOT NULL;

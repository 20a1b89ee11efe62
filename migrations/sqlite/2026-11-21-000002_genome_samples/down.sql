DROP TABLE recontact_steps;
DROP TABLE recontact_requests;
DROP TABLE identity_vault;
DROP TABLE genome_data_objects;
DROP TABLE genome_samples;
DROP TABLE sequencing_authorizations;

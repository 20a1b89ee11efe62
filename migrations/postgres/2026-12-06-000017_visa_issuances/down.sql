DROP TABLE visa_issuances;

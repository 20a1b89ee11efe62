DROP TABLE screening_reports;

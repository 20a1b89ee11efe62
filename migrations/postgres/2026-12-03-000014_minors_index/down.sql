DROP INDEX patients_with_majority;

DROP TABLE enquiry_messages;
DROP TABLE patient_enquiries;

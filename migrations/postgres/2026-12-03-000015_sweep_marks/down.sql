DROP TABLE sweep_marks;

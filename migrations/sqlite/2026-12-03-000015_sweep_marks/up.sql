-- How far each daily sweep has looked (decision 0027). The coming-of-age
-- sweep recalls what a proxy's permits had let releases have, for patients
-- who came of age after `through` and by the day of the sweep; it starts
-- from the distant past, so a first run catches up on every patient whose
-- day came before this migration.
CREATE TABLE sweep_marks (
    name    TEXT PRIMARY KEY,
    through DATE NOT NULL
);
INSERT INTO sweep_marks (name, through) VALUES ('came_of_age', '1900-01-01');

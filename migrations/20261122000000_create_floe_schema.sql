-- floe keeps its engine tables (queue, workflows, history) in a schema of its
-- own, so they never collide with an application's tables in the same database.
CREATE SCHEMA IF NOT EXISTS floe;
COMMENT ON SCHEMA floe IS 'floe: durable workflow engine (queue, workflows, history)';

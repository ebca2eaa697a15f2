// Package console is runfleet's web console: server-rendered HTML pages over
// the same Redis the runners use, for people who want to see a fleet rather
// than query it.
//
// # Pages
//
//   - /login: paste an API token (runfleet token create); a valid one opens
//     a session held in an HttpOnly, SameSite=Strict cookie.
//   - /jobs: newest first, filtered by cluster, state and name, with a
//     "failed only" view, paged with a cursor.
//   - /jobs/{id}: state, task counts, progress, the job graph (collapsed for
//     big fan-outs), failures, a paged task table, the runners that ran the
//     job, its logs, and Retry and Cancel buttons.
//   - /jobs/{id}/tasks/{seq}: one task with its attempts, where each ran
//     (runner context), errors, panic stacks and logs.
//   - /clusters: live runners, deployments, and ready tasks with the oldest
//     ready age per task identifier.
//   - /automations: cron and storage automations.
//
// # Live updates
//
// A job page listens on /jobs/{id}/events, a Server-Sent Events stream fed
// by the job's event stream in Redis (queue.JobEvents), the same events
// `runfleet job wait` blocks on. One watcher per job serves every open page
// of that job, so a hundred viewers cost one blocked Redis read. A watcher
// holds a connection of the client's pool while it blocks, so at most 8
// jobs are watched at once; pages of other jobs are refused the stream and
// refresh every 5 seconds instead. The page updates its counts at once and
// re-renders its live parts (graph, tables) at most about once a second.
// Other pages refresh their live parts every few seconds. Every page has a
// pause button.
//
// # Security
//
// Sessions live in Redis under the hash of their id and refer to the token
// by its hash: revoking the token ends its sessions at the next request.
// Every POST carries a CSRF token tied to the session, and is refused from
// another origin. Tokens keep their scopes: a read token sees no action
// buttons and gets 403 on actions; a token limited to clusters sees only
// those. Responses carry a strict Content-Security-Policy: the pages load
// nothing but their own embedded CSS and script.
//
// # Big jobs
//
// A page never loads every task of a job: the task table reads one page of
// task hashes, failures come from the job's failed set, and the graph reads
// five short fields per task (queue.GraphTasks) and the full record only of
// the tasks drawn one by one. Graphs of finished jobs are cached until the
// job changes (BenchmarkJobPage100k: the page of a 100,002-task job).
package console

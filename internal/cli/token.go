package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/workflows"
)

func (a *app) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke HTTP API tokens",
		Long: `A token lets a client call the HTTP API (runfleet --api, the gateway, the
submit function) without Redis credentials. Its scope is read, submit or admin
(each includes the ones before it); it may be limited to some clusters, and it
has a rate limit. Redis keeps only the token's SHA-256: the token itself is
printed once, by token create.

These commands talk to Redis (--redis), never to the API.`,
		Example: `  runfleet token create --name ci --scope submit --cluster dev
  runfleet token list
  runfleet token revoke ci`,
		Args: groupArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(a.tokenCreateCmd(), a.tokenListCmd(), a.tokenRevokeCmd())
	return cmd
}

var tokenScopes = []string{controlplane.ScopeRead, controlplane.ScopeSubmit, controlplane.ScopeAdmin}

func (a *app) tokenCreateCmd() *cobra.Command {
	var spec controlplane.TokenSpec
	cmd := &cobra.Command{
		Use:   "create --name N --scope read|submit|admin [--cluster C ...]",
		Short: "Create a token and print it once",
		Long: `Create a token. The token is printed once, as the last line of the output;
store it right away (for example in $RUNFLEET_API_TOKEN of the client), since
runfleet keeps only its hash and cannot show it again.

Scopes: read (get and list jobs, list clusters), submit (also submit, cancel
and retry jobs, post events), admin (everything). With --cluster, repeated or
comma-separated, the token may only reach jobs of those clusters.`,
		Example: `  runfleet token create --name ci --scope submit --cluster dev --cluster staging
  runfleet token create --name dashboard --scope read --rate 5 --burst 10
  export RUNFLEET_API_TOKEN=$(runfleet token create --name me --scope submit | tail -n 1)`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if spec.Name == "" {
				return usageErrorf("missing required flag --name")
			}
			switch spec.Scope {
			case "":
				return usageErrorf("missing required flag --scope (%s)", strings.Join(tokenScopes, ", "))
			case controlplane.ScopeRead, controlplane.ScopeSubmit, controlplane.ScopeAdmin:
			default:
				return usageErrorf("--scope must be one of %s, got %q", strings.Join(tokenScopes, ", "), spec.Scope)
			}
			if spec.Rate < 0 {
				return usageErrorf("--rate must not be negative, got %v", spec.Rate)
			}
			if spec.Burst < 0 {
				return usageErrorf("--burst must not be negative, got %d", spec.Burst)
			}
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				t, secret, err := controlplane.CreateToken(cmd.Context(), c, spec)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.out, "created token %s (id %s, scope %s, clusters %s, %s requests/s, burst %d)\n",
					t.Name, t.ID, t.Scope, tokenClusters(t), formatRate(t.Rate), t.Burst)
				fmt.Fprintln(a.out, "The token is shown only this once; store it now (the client reads it from $RUNFLEET_API_TOKEN):")
				fmt.Fprintln(a.out, secret)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Name, "name", "", "token name, unique among live tokens (required)")
	f.StringVar(&spec.Scope, "scope", "", "what the token may do: "+strings.Join(tokenScopes, ", ")+" (required)")
	f.StringSliceVar(&spec.Clusters, "cluster", nil, "limit the token to this cluster; repeat for more (default: every cluster)")
	f.Float64Var(&spec.Rate, "rate", 0, fmt.Sprintf("sustained requests per second (default %v)", controlplane.DefaultTokenRate))
	f.IntVar(&spec.Burst, "burst", 0, fmt.Sprintf("requests allowed at once above the rate (default %d)", controlplane.DefaultTokenBurst))
	return cmd
}

// tokenView is what the CLI shows of a token: never the secret, nor its
// hash.
type tokenView struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Scope     string    `json:"scope"`
	Clusters  []string  `json:"clusters"`
	Rate      float64   `json:"rate"`
	Burst     int       `json:"burst"`
	CreatedAt time.Time `json:"created_at"`
}

func viewToken(t controlplane.Token) tokenView {
	cl := t.Clusters
	if cl == nil {
		cl = []string{}
	}
	return tokenView{ID: t.ID, Name: t.Name, Scope: t.Scope, Clusters: cl, Rate: t.Rate, Burst: t.Burst, CreatedAt: t.CreatedAt}
}

func tokenClusters(t controlplane.Token) string {
	if len(t.Clusters) == 0 {
		return "all"
	}
	return strings.Join(t.Clusters, ",")
}

func formatRate(r float64) string { return strconv.FormatFloat(r, 'f', -1, 64) }

func (a *app) tokenListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tokens by name (never their secrets)",
		Example: `  runfleet token list
  runfleet token list --json | jq -r '.[] | select(.scope == "admin") | .name'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				ts, err := controlplane.ListTokens(cmd.Context(), c)
				if err != nil {
					return err
				}
				if asJSON {
					views := make([]tokenView, 0, len(ts))
					for _, t := range ts {
						views = append(views, viewToken(t))
					}
					return writeJSON(a.out, views)
				}
				if len(ts) == 0 {
					fmt.Fprintln(a.err, "no tokens yet; create one with: runfleet token create --name N --scope submit")
					return nil
				}
				return writeTokenTable(a.out, ts, time.Now())
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the tokens as a JSON array (without secrets)")
	return cmd
}

func writeTokenTable(w io.Writer, ts []controlplane.Token, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tNAME\tSCOPE\tCLUSTERS\tRATE\tBURST\tCREATED\tAGE")
	for _, t := range ts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/s\t%d\t%s\t%s\n", t.ID, t.Name, t.Scope, tokenClusters(t),
			formatRate(t.Rate), t.Burst, timestamp(t.CreatedAt), age(t.CreatedAt, now))
	}
	return tw.Flush()
}

func (a *app) tokenRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID|NAME",
		Short: "Revoke a token at once",
		Long:  "Delete a token. Requests with it are refused (401) from then on.",
		Example: `  runfleet token revoke ci
  runfleet token revoke 3f9a1c2b7d4e`,
		Args: exactArgs("ID|NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd.Context(), func(c *workflows.Client) error {
				t, err := controlplane.RevokeToken(cmd.Context(), c, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(a.out, "revoked token %s (id %s)\n", t.Name, t.ID)
				return nil
			})
		},
	}
}

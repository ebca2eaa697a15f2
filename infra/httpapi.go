package infra

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewayv2"
	apitypes "github.com/aws/aws-sdk-go-v2/service/apigatewayv2/types"
)

// APIRoutes are the routes of the HTTP API v1 (controlplane/routes.go), all
// served by the submit function.
var APIRoutes = []string{
	"GET /healthz",
	"POST /v1/jobs",
	"GET /v1/jobs",
	"GET /v1/jobs/{id}",
	"POST /v1/jobs/{id}/cancel",
	"POST /v1/jobs/{id}/retry",
	"GET /v1/clusters",
	"POST /v1/events/s3",
}

// httpAPIResource is the API Gateway HTTP API in front of the submit
// function: one Lambda proxy integration (payload 2.0), a route per API v1
// route and the $default stage, deployed automatically. API names are not
// unique, so the stack's API is the one with its name and its tag.
type httpAPIResource struct {
	e *Engine

	api          *apitypes.Api
	integration  *apitypes.Integration
	routes       map[string]apitypes.Route // by route key
	stageMissing bool
}

func (a *httpAPIResource) kind() string { return "http api" }
func (a *httpAPIResource) name() string { return "runfleet-" + a.e.stack.Name }

// find returns the stack's API, or nil.
func (e *Engine) findAPI(ctx context.Context) (*apitypes.Api, error) {
	var next *string
	for {
		out, err := e.apigw.GetApis(ctx, &apigatewayv2.GetApisInput{NextToken: next})
		if err != nil {
			return nil, fmt.Errorf("list apis: %w", err)
		}
		for _, api := range out.Items {
			if aws.ToString(api.Name) == "runfleet-"+e.stack.Name && api.Tags[TagKey] == e.stack.Name {
				return &api, nil
			}
		}
		if next = out.NextToken; next == nil || *next == "" {
			return nil, nil
		}
	}
}

// apiSourceARN is what may invoke the submit function through the API.
func (e *Engine) apiSourceARN(ctx context.Context) (string, error) {
	api, err := e.findAPI(ctx)
	if err != nil || api == nil {
		return "", err
	}
	return fmt.Sprintf("arn:aws:execute-api:%s:%s:%s/*/*", e.region, e.account, aws.ToString(api.ApiId)), nil
}

func (a *httpAPIResource) plan(ctx context.Context) (diff, error) {
	var d diff
	api, err := a.e.findAPI(ctx)
	if err != nil {
		return d, err
	}
	a.api, a.integration, a.routes, a.stageMissing = api, nil, map[string]apitypes.Route{}, true
	if api == nil {
		d.action = ActionCreate
		d.detail = fmt.Sprintf("%d routes → %s (payload 2.0), stage $default", len(APIRoutes), a.e.functionName("submit"))
		return d, nil
	}
	id := api.ApiId
	ints, err := a.e.apigw.GetIntegrations(ctx, &apigatewayv2.GetIntegrationsInput{ApiId: id})
	if err != nil {
		return d, fmt.Errorf("get integrations: %w", err)
	}
	for _, in := range ints.Items {
		if in.IntegrationType == apitypes.IntegrationTypeAwsProxy {
			a.integration = &in
			break
		}
	}
	if a.integration == nil {
		d.changed("integration")
	} else if aws.ToString(a.integration.IntegrationUri) != a.e.functionARN("submit") || aws.ToString(a.integration.PayloadFormatVersion) != "2.0" {
		d.change("integration", aws.ToString(a.integration.IntegrationUri)+" payload "+aws.ToString(a.integration.PayloadFormatVersion),
			a.e.functionARN("submit")+" payload 2.0")
	}
	routes, err := a.e.apigw.GetRoutes(ctx, &apigatewayv2.GetRoutesInput{ApiId: id})
	if err != nil {
		return d, fmt.Errorf("get routes: %w", err)
	}
	for _, r := range routes.Items {
		a.routes[aws.ToString(r.RouteKey)] = r
	}
	var routeChanges []string
	for _, key := range APIRoutes {
		r, ok := a.routes[key]
		switch {
		case !ok:
			routeChanges = append(routeChanges, "+"+key)
		case a.integration == nil || aws.ToString(r.Target) != "integrations/"+aws.ToString(a.integration.IntegrationId):
			routeChanges = append(routeChanges, "~"+key)
		}
	}
	for _, key := range sortedKeys(a.routes) {
		if !slices.Contains(APIRoutes, key) {
			routeChanges = append(routeChanges, "-"+key)
		}
	}
	if len(routeChanges) > 0 {
		d.changed("routes " + strings.Join(routeChanges, " "))
	}
	stages, err := a.e.apigw.GetStages(ctx, &apigatewayv2.GetStagesInput{ApiId: id})
	if err != nil {
		return d, fmt.Errorf("get stages: %w", err)
	}
	for _, s := range stages.Items {
		if aws.ToString(s.StageName) == "$default" {
			a.stageMissing = false
			if !aws.ToBool(s.AutoDeploy) {
				d.change("stage", "manual deploy", "auto-deploy")
			}
		}
	}
	if a.stageMissing {
		d.changed("stage")
	}
	return d, nil
}

func (a *httpAPIResource) apply(ctx context.Context, d diff) error {
	if a.api == nil {
		out, err := a.e.apigw.CreateApi(ctx, &apigatewayv2.CreateApiInput{Name: aws.String(a.name()),
			ProtocolType: apitypes.ProtocolTypeHttp, Tags: a.e.tags(),
			Description: aws.String("runfleet HTTP API v1 (stack " + a.e.stack.Name + ")")})
		if err != nil {
			return err
		}
		a.api = &apitypes.Api{ApiId: out.ApiId, Name: out.Name}
	}
	id := a.api.ApiId
	uri := aws.String(a.e.functionARN("submit"))
	switch {
	case a.integration == nil:
		out, err := a.e.apigw.CreateIntegration(ctx, &apigatewayv2.CreateIntegrationInput{ApiId: id,
			IntegrationType: apitypes.IntegrationTypeAwsProxy, IntegrationUri: uri, PayloadFormatVersion: aws.String("2.0")})
		if err != nil {
			return fmt.Errorf("create integration: %w", err)
		}
		a.integration = &apitypes.Integration{IntegrationId: out.IntegrationId}
	case d.has("integration"):
		if _, err := a.e.apigw.UpdateIntegration(ctx, &apigatewayv2.UpdateIntegrationInput{ApiId: id, IntegrationId: a.integration.IntegrationId,
			IntegrationType: apitypes.IntegrationTypeAwsProxy, IntegrationUri: uri, PayloadFormatVersion: aws.String("2.0")}); err != nil {
			return fmt.Errorf("update integration: %w", err)
		}
	}
	target := aws.String("integrations/" + aws.ToString(a.integration.IntegrationId))
	for _, key := range APIRoutes {
		r, ok := a.routes[key]
		switch {
		case !ok:
			if _, err := a.e.apigw.CreateRoute(ctx, &apigatewayv2.CreateRouteInput{ApiId: id, RouteKey: aws.String(key), Target: target}); err != nil {
				return fmt.Errorf("create route %s: %w", key, err)
			}
		case aws.ToString(r.Target) != aws.ToString(target):
			if _, err := a.e.apigw.UpdateRoute(ctx, &apigatewayv2.UpdateRouteInput{ApiId: id, RouteId: r.RouteId, Target: target}); err != nil {
				return fmt.Errorf("update route %s: %w", key, err)
			}
		}
	}
	for key, r := range a.routes {
		if !slices.Contains(APIRoutes, key) {
			if _, err := a.e.apigw.DeleteRoute(ctx, &apigatewayv2.DeleteRouteInput{ApiId: id, RouteId: r.RouteId}); err != nil && !isNotFound(err) {
				return fmt.Errorf("delete route %s: %w", key, err)
			}
		}
	}
	if a.stageMissing {
		if _, err := a.e.apigw.CreateStage(ctx, &apigatewayv2.CreateStageInput{ApiId: id, StageName: aws.String("$default"),
			AutoDeploy: aws.Bool(true), Tags: a.e.tags()}); err != nil {
			return fmt.Errorf("create stage: %w", err)
		}
	} else if d.has("stage") {
		if _, err := a.e.apigw.UpdateStage(ctx, &apigatewayv2.UpdateStageInput{ApiId: id, StageName: aws.String("$default"),
			AutoDeploy: aws.Bool(true)}); err != nil {
			return fmt.Errorf("update stage: %w", err)
		}
	}
	return nil
}

func (a *httpAPIResource) inspect(ctx context.Context) (presence, error) {
	api, err := a.e.findAPI(ctx)
	if err != nil || api == nil {
		return presence{}, err
	}
	a.api = api
	return presence{exists: true, owner: api.Tags[TagKey]}, nil
}

func (a *httpAPIResource) remove(ctx context.Context) error {
	_, err := a.e.apigw.DeleteApi(ctx, &apigatewayv2.DeleteApiInput{ApiId: a.api.ApiId})
	if isNotFound(err) {
		return nil
	}
	return err
}

package main

import (
	"context"
	"encoding/json"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

type policyRequest struct {
	Policy *string `json:"policy,omitempty"`
	// Evaluate asks IsRunningImageAllowed for an unsigned image under each reference.
	Evaluate bool `json:"evaluate,omitempty"`
	// Refs is shared with sourcesRequest (same JSON key).
}

type policyResult struct {
	Input        string            `json:"input"`
	Reference    string            `json:"reference,omitempty"`
	Scope        *string           `json:"scope,omitempty"`
	Requirements []json.RawMessage `json:"requirements,omitempty"`
	Types        []string          `json:"types,omitempty"`
	Allowed      *bool             `json:"allowed,omitempty"`
	Reason       string            `json:"reason,omitempty"`
	Error        string            `json:"error,omitempty"`
}

// unsignedImage is an image with one small manifest and no signatures at all.
type unsignedImage struct{ ref types.ImageReference }

func (i unsignedImage) Reference() types.ImageReference { return i.ref }

func (i unsignedImage) Manifest(context.Context) ([]byte, string, error) {
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,` +
		`"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},` +
		`"layers":[]}`)
	return body, manifest.GuessMIMEType(body), nil
}

func (i unsignedImage) Signatures(context.Context) ([][]byte, error) { return nil, nil }

// scopeFor is the key PolicyContext.requirementsForImageRef settles on, found through the
// reference's public PolicyConfigurationIdentity and PolicyConfigurationNamespaces.
func scopeFor(p *signature.Policy, ref types.ImageReference) (string, signature.PolicyRequirements) {
	if scopes, ok := p.Transports[ref.Transport().Name()]; ok {
		candidates := append([]string{ref.PolicyConfigurationIdentity()}, ref.PolicyConfigurationNamespaces()...)
		candidates = append(candidates, "")
		for _, scope := range candidates {
			if reqs, ok := scopes[scope]; ok {
				return scope, reqs
			}
		}
	}
	return "default", p.Default
}

// policy parses policy.json with signature.NewPolicyFromBytes and, per reference, names
// the requirement list that applies (docker transport) and optionally the verdict of
// PolicyContext.IsRunningImageAllowed for an unsigned image.
func policy(req *policyRequest, refs []string) (answer, error) {
	if req.Policy == nil {
		return answer{"parse_error": nil, "results": []policyResult{}}, nil
	}
	parsed, err := signature.NewPolicyFromBytes([]byte(*req.Policy))
	if err != nil {
		return answer{"parse_error": err.Error(), "results": []policyResult{}}, nil
	}
	results := make([]policyResult, 0, len(refs))
	for _, text := range refs {
		results = append(results, policyFor(parsed, text, req.Evaluate))
	}
	return answer{"parse_error": nil, "results": results}, nil
}

func policyFor(parsed *signature.Policy, text string, evaluate bool) policyResult {
	result := policyResult{Input: text}
	ref, err := docker.ParseReference("//" + text)
	if err != nil {
		result.Error = err.Error()
		return result
	}
	result.Reference = ref.DockerReference().String()
	scope, reqs := scopeFor(parsed, ref)
	result.Scope = &scope
	for _, requirement := range reqs {
		raw, err := json.Marshal(requirement)
		if err != nil {
			result.Error = "marshalling a requirement: " + err.Error()
			return result
		}
		var head struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(raw, &head)
		result.Requirements = append(result.Requirements, raw)
		result.Types = append(result.Types, head.Type)
	}
	if !evaluate {
		return result
	}
	pc, err := signature.NewPolicyContext(parsed)
	if err != nil {
		result.Error = err.Error()
		return result
	}
	defer func() { _ = pc.Destroy() }()
	allowed, err := pc.IsRunningImageAllowed(context.Background(), unsignedImage{ref})
	result.Allowed = &allowed
	if err != nil {
		result.Reason = err.Error()
	}
	return result
}

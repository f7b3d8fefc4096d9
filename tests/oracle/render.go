package main

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/BurntSushi/toml"
	oldsysregistries "github.com/containers/image/v5/pkg/sysregistriesv2"
	apicfgv1 "github.com/openshift/api/config/v1"
	apioperatorsv1alpha1 "github.com/openshift/api/operator/v1alpha1"
	"github.com/openshift/runtime-utils/pkg/registries"
)

type renderRequest struct {
	// Template is the registries.conf the operator starts from (its template's bytes).
	Template string   `json:"template,omitempty"`
	Insecure []string `json:"insecure,omitempty"`
	Blocked  []string `json:"blocked,omitempty"`
	// The mirror-set objects as the API serves them (JSON of the CRs).
	ICSP []json.RawMessage `json:"icsp,omitempty"`
	IDMS []json.RawMessage `json:"idms,omitempty"`
	ITMS []json.RawMessage `json:"itms,omitempty"`
}

func decodeAll[T any](raws []json.RawMessage, kind string) ([]*T, error) {
	out := make([]*T, 0, len(raws))
	for i, raw := range raws {
		item := new(T)
		if err := json.Unmarshal(raw, item); err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", kind, i, err)
		}
		out = append(out, item)
	}
	return out, nil
}

// render does what the Machine Config Operator's updateRegistriesConfig does with
// runtime-utils: decode the template (BurntSushi toml into V2RegistriesConf), call
// registries.EditRegistriesConfig, encode with toml.NewEncoder.
func render(req *renderRequest) (answer, error) {
	icsp, err := decodeAll[apioperatorsv1alpha1.ImageContentSourcePolicy](req.ICSP, "icsp")
	if err != nil {
		return nil, err
	}
	idms, err := decodeAll[apicfgv1.ImageDigestMirrorSet](req.IDMS, "idms")
	if err != nil {
		return nil, err
	}
	itms, err := decodeAll[apicfgv1.ImageTagMirrorSet](req.ITMS, "itms")
	if err != nil {
		return nil, err
	}
	conf := oldsysregistries.V2RegistriesConf{}
	if _, err := toml.Decode(req.Template, &conf); err != nil {
		return answer{"edit_error": "error unmarshalling registries config: " + err.Error()}, nil
	}
	if err := registries.EditRegistriesConfig(&conf, req.Insecure, req.Blocked, icsp, idms, itms); err != nil {
		return answer{"edit_error": err.Error()}, nil
	}
	var out bytes.Buffer
	if err := toml.NewEncoder(&out).Encode(conf); err != nil {
		return nil, err
	}
	return answer{"edit_error": nil, "toml": out.String()}, nil
}

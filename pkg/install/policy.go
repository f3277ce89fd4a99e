package install

// PolicyName is the name of an installation's ValidatingAdmissionPolicy on
// Nodes and its binding (cluster-scoped; a DNS subdomain, so no ':'). The
// chart's policies.yaml makes them.
func PolicyName(namespace string) string { return Name + "." + namespace }

// PodPolicyName is the name of an installation's ValidatingAdmissionPolicy
// on the pods of its namespace, and of its binding.
func PodPolicyName(namespace string) string { return Name + "-pods." + namespace }

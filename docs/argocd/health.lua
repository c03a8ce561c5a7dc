-- Argo CD health check for tailor.dev/PersonalizationPipeline.
-- Install: argocd-cm, key resource.customizations.health.tailor.dev_PersonalizationPipeline
-- (see docs/argocd/README.md). Tested by tests/unit/test_argocd_health.py.
local hs = {}
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: workers and scorers scaled to zero"
  return hs
end
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end
local ready, degraded, rollout
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then ready = condition end
  if condition.type == "Degraded" then degraded = condition end
  if condition.type == "ModelRolledOut" then rollout = condition end
end
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = degraded.message
  return hs
end
-- A model rollout: a rolled-back or failed canary means the spec (Git) names a version that
-- is not served (serving goes on, but Git and the cluster disagree until the spec changes);
-- a canary under analysis or scorers rolling to a new model are on their way.
local rollout_health = {
  RolledBack = "Degraded", CanaryFailed = "Degraded",
  CanaryAnalysis = "Progressing", RollingOut = "Progressing",
}
if rollout ~= nil and rollout.status == "False" and rollout_health[rollout.reason] ~= nil then
  hs.status = rollout_health[rollout.reason]
  hs.message = rollout.message
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
hs.status = "Progressing"
hs.message = ready ~= nil and ready.message or "Waiting for the Ready condition"
return hs

export function WorkflowEditorPage({ workflowId }: { workflowId: string; runId?: string }) {
  return <div className="page">Workflow {workflowId}</div>;
}

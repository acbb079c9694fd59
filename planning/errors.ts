/** Impossible or invalid planning input; the message is written for the user (CLI, CR status). */
export class PlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PlanError';
  }
}

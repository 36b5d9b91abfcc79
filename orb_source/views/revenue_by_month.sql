-- Invoiced, paid, voided and credited amounts per calendar month (UTC) and currency.
-- Each amount falls in the month its event happened: invoiced on invoice_date, paid on
-- paid_at, voided on voided_at, credited on the credit note's created_at. Drafts count
-- nowhere; a voided invoice counts only as voided; voided credit notes count nowhere.
with movements as (
    select invoice_date as happened_at, currency, 'invoiced' as measure, total as amount
    from {dataset}.invoices
    where deleted_at is null and status in ('issued', 'paid', 'synced')
    union all
    select paid_at, currency, 'paid', amount_due
    from {dataset}.invoices
    where deleted_at is null and status = 'paid'
    union all
    select voided_at, currency, 'voided', total
    from {dataset}.invoices
    where deleted_at is null and status = 'void'
    union all
    select n.created_at, i.currency, 'credited', n.total
    from {dataset}.credit_notes n
    join {dataset}.invoices i on i.id = n.invoice_id
    where n.deleted_at is null and n.voided_at is null and i.deleted_at is null
)
select
    cast(date_trunc('month', happened_at at time zone 'UTC') as date) as month,
    currency,
    sum(case when measure = 'invoiced' then amount else 0 end) as invoiced,
    sum(case when measure = 'paid' then amount else 0 end) as paid,
    sum(case when measure = 'voided' then amount else 0 end) as voided,
    sum(case when measure = 'credited' then amount else 0 end) as credited,
    sum(case when measure = 'invoiced' then amount when measure = 'credited' then -amount else 0 end)
        as net_invoiced,
    count(case when measure = 'invoiced' then 1 end) as invoices_issued,
    count(case when measure = 'paid' then 1 end) as invoices_paid,
    count(case when measure = 'voided' then 1 end) as invoices_voided,
    count(case when measure = 'credited' then 1 end) as credit_notes
from movements
where happened_at is not null
group by 1, 2
